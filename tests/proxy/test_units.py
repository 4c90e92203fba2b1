"""Small pure pieces of the proxy: feature rules, attribution, redaction, estimates, config errors."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spendgate_proxy.attribution import features
from spendgate_proxy.attribution.chain import parse_path_prefix, resolve
from spendgate_proxy.attribution.features import classify
from spendgate_proxy.config import ConfigError, load_config
from spendgate_proxy.formats import estimate
from spendgate_proxy.keys import (
    VERIFIED_CACHE_SIZE,
    KeyDirectory,
    KeyRecord,
    Principal,
    create_key,
    hash_key,
    read_key_file,
    revoke_key,
)
from spendgate_proxy.telemetry.redact import redact
from spendgate_semconv.attributes import Feature, RepoSource

USER = {"role": "user", "content": "How does the cache work?"}
TOOLS = [{"type": "function", "function": {"name": "grep", "parameters": {}}}]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"messages": [USER]}, Feature.CHAT),
        ({"messages": [USER], "tools": TOOLS}, Feature.AGENT),
        ({"messages": [USER, {"role": "assistant", "tool_calls": [{"id": "1"}]}]}, Feature.AGENT),
        ({"messages": [USER, {"role": "tool", "content": "x", "tool_call_id": "1"}]}, Feature.AGENT),
        (
            {"messages": [{"role": "user", "content": "Summarize the conversation so far."}], "tools": TOOLS},
            Feature.SUMMARISE,
        ),
        ({"messages": [{"role": "system", "content": "Summarise the text you are given."}, USER]}, Feature.SUMMARISE),
        # An agent's system prompt that mentions summaries in passing is still an agent turn.
        (
            {"messages": [{"role": "system", "content": "You may summarize files."}, USER], "tools": TOOLS},
            Feature.AGENT,
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "please condense this"}]}]},
            Feature.SUMMARISE,
        ),
        ({"messages": [{"role": "system", "content": "hi"}]}, Feature.OTHER),
        ({"input": "hello"}, Feature.OTHER),
    ],
)
def test_feature_rules(body: dict, expected: str) -> None:
    assert classify(body) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Summarize the conversation so far.",
        "SUMMARISE THIS",
        "a summary of THE conversation",
        "Compact this Conversation please",
        "condense",
        "condensed",  # no word boundary after "condense": no match
        "resummarize",  # none before it either
        "\u017fummarize this",  # long s: IGNORECASE matches it to "s", lower() does not
        "\u212aeep it short, summarize",  # Kelvin sign in an otherwise matching text
        "compact the conversation \u00e9t\u00e9",
        "You are a concise coding assistant.",
        "",
    ],
)
def test_summarise_prefilter_agrees_with_the_regex(text: str) -> None:
    assert features._asks_to_summarise(text) == (features._SUMMARISE.search(text) is not None)
    assert features._asks_to_summarise("x " * 500 + text) == (features._SUMMARISE.search("x " * 500 + text) is not None)


def test_attribution_precedence() -> None:
    prefix = parse_path_prefix("repo=web,branch=dev,tags=a+b")
    assert prefix == {"repo": "web", "branch": "dev", "tags": "a+b"}
    a = resolve({"x-spendgate-repo": "api"}, prefix, "default")
    assert (a.repo, a.repo_source, a.branch, a.tags) == ("api", RepoSource.HEADER, "dev", ("a", "b"))
    assert resolve({}, prefix, "default").repo_source == RepoSource.PATH_PREFIX
    assert resolve({}, {}, "default").repo_source == RepoSource.KEY_DEFAULT
    assert resolve({}, {}, None).repo_source == RepoSource.NONE
    with pytest.raises(ValueError, match="owner=me"):
        parse_path_prefix("repo=a,owner=me")


def test_redaction_removes_known_secret_shapes() -> None:
    text = (
        "key sk-proj-abcdefghijklmnopqrstuvwxyz012345 and sg-AAAAAAAAAAAAAAAAAAAAAAAAAAAA and "
        "AKIAABCDEFGHIJKLMNOP, password = hunter2hunter2, Authorization: Bearer abcdefghijklmnopqrstu"
    )
    out = redact(text)
    for secret in ("sk-proj-abc", "sg-AAAA", "AKIAABCD", "hunter2", "abcdefghijklmnopqrstu"):
        assert secret not in out
    assert out.count("[REDACTED]") == 5


def test_estimates_are_documented_heuristic_without_cached_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    estimate._encoder.cache_clear()
    assert estimate.count_tokens("a" * 10) == 3  # ceil(10 / 4)
    body = {"messages": [{"role": "user", "content": "x" * 40}, {"role": "assistant", "content": "y" * 40}]}
    assert estimate.prompt_tokens(body) == 2 * 4 + 21  # two messages' framing + ceil(81 / 4)


def test_key_file_round_trip_stores_only_hashes(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    key, rec = create_key(path, user="ana@acme.com", team="platform", repo="api")
    text = path.read_text()
    assert key not in text
    assert hash_key(key) in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert read_key_file(path)[0].principal == rec.principal
    assert KeyDirectory(path).lookup(key).user == "ana@acme.com"
    with pytest.raises(ValueError, match="email"):
        create_key(path, user="ana")


def test_verified_key_cache_never_outlives_a_change(tmp_path: Path) -> None:
    """``lookup`` remembers verified keys; every index change forgets them and every hit is re-checked."""
    path = tmp_path / "keys.yaml"
    key, rec = create_key(path, user="ana@acme.com")
    keys = KeyDirectory(path)
    assert keys.lookup(key) is keys.lookup(key) is keys._verified[key]  # the second lookup was a hit
    revoke_key(path, rec.principal.key_id)
    os.utime(path, ns=(1, 1))  # a reload must not depend on the mtime's resolution
    assert keys.reload_if_changed()
    with pytest.raises(LookupError, match="revoked"):
        keys.lookup(key)
    assert key not in keys._verified

    # Control-plane changes: a rotated hash, a disabled key, a removed key.
    keys = KeyDirectory(records=[KeyRecord(Principal("key_b", "b@acme.com"), hash_key("sg-b"), "sg-b")])
    assert keys.lookup("sg-b").user == "b@acme.com"
    keys.upsert([KeyRecord(Principal("key_b", "b@acme.com"), hash_key("sg-b2"), "sg-b2")])
    with pytest.raises(LookupError, match="unknown"):
        keys.lookup("sg-b")
    assert keys.lookup("sg-b2").key_id == "key_b"
    keys.upsert([KeyRecord(Principal("key_b", "b@acme.com", disabled=True), hash_key("sg-b2"), "sg-b2")])
    with pytest.raises(LookupError, match="disabled"):
        keys.lookup("sg-b2")
    keys.upsert([KeyRecord(Principal("key_b", "b@acme.com"), hash_key("sg-b2"), "sg-b2")])
    assert keys.lookup("sg-b2").key_id == "key_b"
    keys.remove(["key_b"])
    with pytest.raises(LookupError, match="unknown"):
        keys.lookup("sg-b2")
    keys.replace([KeyRecord(Principal("key_c", "c@acme.com"), hash_key("sg-c"), "sg-c")])
    assert keys.lookup("sg-c").user == "c@acme.com"
    keys.replace([])
    with pytest.raises(LookupError, match="unknown"):
        keys.lookup("sg-c")


def test_verified_key_cache_rechecks_expiry_and_is_bounded() -> None:
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    keys = KeyDirectory(records=[KeyRecord(Principal("key_e", "e@acme.com", expires_at=expires), hash_key("sg-e"), "")])
    assert keys.lookup("sg-e", now=expires - timedelta(seconds=1)).key_id == "key_e"
    assert "sg-e" in keys._verified
    with pytest.raises(LookupError, match="expired"):
        keys.lookup("sg-e", now=expires)  # a hit, and still refused once the key has expired

    many = [KeyRecord(Principal(f"key_{i}", f"u{i}@acme.com"), hash_key(f"sg-{i}"), "") for i in range(3000)]
    keys = KeyDirectory(records=many)
    for i in range(3000):
        assert keys.lookup(f"sg-{i}").key_id == f"key_{i}"
    assert len(keys._verified) == VERIFIED_CACHE_SIZE
    assert "sg-2999" in keys._verified and "sg-0" not in keys._verified  # the oldest went first
    with pytest.raises(LookupError, match="unknown"):
        keys.lookup("sg-nope")
    assert "sg-nope" not in keys._verified  # refusals are never remembered


def test_verified_key_cache_a_lookup_racing_a_reload_stores_nothing_live() -> None:
    """A lookup that read the old index while a reload swapped it stores into the discarded dict."""
    keys = KeyDirectory(records=[KeyRecord(Principal("key_r", "r@acme.com"), hash_key("sg-r"), "")])
    stale = keys._verified
    keys.replace([])  # what the executor thread does between the lookup's two reads
    stale["sg-r"] = Principal("key_r", "r@acme.com")  # the racing lookup's late store
    with pytest.raises(LookupError, match="unknown"):
        keys.lookup("sg-r")


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("providers:\n  openai:\n    base_url: not-a-url\nmodels:\n  - name: m\n    provider: nope\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg, env={})
    assert "providers.openai.base_url" in str(err.value)
    cfg.write_text("providers:\n  openai:\n    base_url: https://x/v1\n    api_key_env: NOPE\n")
    with pytest.raises(ConfigError, match=r"providers.openai.api_key_env: environment variable NOPE is not set"):
        load_config(cfg, env={})
    cfg.write_text("listen: 8080\n")
    with pytest.raises(ConfigError, match="listen"):
        load_config(cfg, env={})
    cfg.write_text(
        "providers:\n  o:\n    base_url: https://x/v1\nmodels:\n  - name: m\n    provider: o\n    colour: red\n"
    )
    with pytest.raises(ConfigError, match=r"models.0.colour"):
        load_config(cfg, env={})


def test_config_resolution_order(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("listen: 127.0.0.1:1000\nkeys_file: a.yaml\n")
    s = load_config(cfg, env={"SPENDGATE_PROXY_LISTEN": "127.0.0.1:2000"}, overrides={"keys_file": "b.yaml"})
    assert (s.port, s.keys_file) == (2000, Path("b.yaml"))
    assert "sk-secret" not in repr(
        load_config(overrides={"providers": {"o": {"base_url": "https://x/v1", "api_key": "sk-secret"}}}).providers
    )


def test_example_config_loads_every_section() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "spendgate.yaml"
    s = load_config(example, env={"OPENAI_API_KEY": "sk-test"})
    assert (s.port, len(s.providers), len(s.models)) == (8787, 2, 4)
    assert s.routing.rules[0].name == "short-chats-to-mini"
    assert s.routing.fallbacks == {"gpt-4.1": ["gpt-4.1-mini"]}
    assert s.telemetry.endpoint == "http://127.0.0.1:4317"
    assert (s.control.endpoint, s.control.on_no_state) == ("127.0.0.1:4320", "fail_open")
