from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubscribeRequest(_message.Message):
    __slots__ = ("proxy_id", "resume_version", "epoch", "proxy_version")
    PROXY_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_VERSION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    PROXY_VERSION_FIELD_NUMBER: _ClassVar[int]
    proxy_id: str
    resume_version: int
    epoch: int
    proxy_version: str
    def __init__(self, proxy_id: _Optional[str] = ..., resume_version: _Optional[int] = ..., epoch: _Optional[int] = ..., proxy_version: _Optional[str] = ...) -> None: ...

class ControlUpdate(_message.Message):
    __slots__ = ("version", "epoch", "snapshot", "keys_upsert", "keys_removed", "verdicts_upsert", "verdicts_removed", "heartbeat", "server_time_unix_ms", "budgets_upsert", "budgets_removed", "windows_upsert", "no_key_directory")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    KEYS_UPSERT_FIELD_NUMBER: _ClassVar[int]
    KEYS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_UPSERT_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_UPSERT_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_UPSERT_FIELD_NUMBER: _ClassVar[int]
    NO_KEY_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    version: int
    epoch: int
    snapshot: bool
    keys_upsert: _containers.RepeatedCompositeFieldContainer[KeyEntry]
    keys_removed: _containers.RepeatedScalarFieldContainer[str]
    verdicts_upsert: _containers.RepeatedCompositeFieldContainer[Verdict]
    verdicts_removed: _containers.RepeatedScalarFieldContainer[str]
    heartbeat: bool
    server_time_unix_ms: int
    budgets_upsert: _containers.RepeatedCompositeFieldContainer[BudgetState]
    budgets_removed: _containers.RepeatedScalarFieldContainer[str]
    windows_upsert: _containers.RepeatedCompositeFieldContainer[AttributionWindow]
    no_key_directory: bool
    def __init__(self, version: _Optional[int] = ..., epoch: _Optional[int] = ..., snapshot: _Optional[bool] = ..., keys_upsert: _Optional[_Iterable[_Union[KeyEntry, _Mapping]]] = ..., keys_removed: _Optional[_Iterable[str]] = ..., verdicts_upsert: _Optional[_Iterable[_Union[Verdict, _Mapping]]] = ..., verdicts_removed: _Optional[_Iterable[str]] = ..., heartbeat: _Optional[bool] = ..., server_time_unix_ms: _Optional[int] = ..., budgets_upsert: _Optional[_Iterable[_Union[BudgetState, _Mapping]]] = ..., budgets_removed: _Optional[_Iterable[str]] = ..., windows_upsert: _Optional[_Iterable[_Union[AttributionWindow, _Mapping]]] = ..., no_key_directory: _Optional[bool] = ...) -> None: ...

class SyncKeysRequest(_message.Message):
    __slots__ = ("proxy_id",)
    PROXY_ID_FIELD_NUMBER: _ClassVar[int]
    proxy_id: str
    def __init__(self, proxy_id: _Optional[str] = ...) -> None: ...

class SyncKeysReply(_message.Message):
    __slots__ = ("epoch", "version")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    version: int
    def __init__(self, epoch: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class LeaveRequest(_message.Message):
    __slots__ = ("proxy_id",)
    PROXY_ID_FIELD_NUMBER: _ClassVar[int]
    proxy_id: str
    def __init__(self, proxy_id: _Optional[str] = ...) -> None: ...

class LeaveReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AttributionWindow(_message.Message):
    __slots__ = ("user", "repo", "branch", "repo_url", "workspace_root", "since_unix_ns", "until_unix_ns")
    USER_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    REPO_URL_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ROOT_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    user: str
    repo: str
    branch: str
    repo_url: str
    workspace_root: str
    since_unix_ns: int
    until_unix_ns: int
    def __init__(self, user: _Optional[str] = ..., repo: _Optional[str] = ..., branch: _Optional[str] = ..., repo_url: _Optional[str] = ..., workspace_root: _Optional[str] = ..., since_unix_ns: _Optional[int] = ..., until_unix_ns: _Optional[int] = ...) -> None: ...

class AttributionReport(_message.Message):
    __slots__ = ("proxy_id", "window")
    PROXY_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    proxy_id: str
    window: AttributionWindow
    def __init__(self, proxy_id: _Optional[str] = ..., window: _Optional[_Union[AttributionWindow, _Mapping]] = ...) -> None: ...

class AttributionAck(_message.Message):
    __slots__ = ("window",)
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    window: AttributionWindow
    def __init__(self, window: _Optional[_Union[AttributionWindow, _Mapping]] = ...) -> None: ...

class KeyEntry(_message.Message):
    __slots__ = ("key_id", "hash", "prefix", "user", "team", "cost_center", "repo", "models", "expires_at_unix_ms", "disabled", "revoked_at_unix_ms", "created_at_unix_ms")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    COST_CENTER_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    hash: str
    prefix: str
    user: str
    team: str
    cost_center: str
    repo: str
    models: _containers.RepeatedScalarFieldContainer[str]
    expires_at_unix_ms: int
    disabled: bool
    revoked_at_unix_ms: int
    created_at_unix_ms: int
    def __init__(self, key_id: _Optional[str] = ..., hash: _Optional[str] = ..., prefix: _Optional[str] = ..., user: _Optional[str] = ..., team: _Optional[str] = ..., cost_center: _Optional[str] = ..., repo: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., expires_at_unix_ms: _Optional[int] = ..., disabled: _Optional[bool] = ..., revoked_at_unix_ms: _Optional[int] = ..., created_at_unix_ms: _Optional[int] = ...) -> None: ...

class Scope(_message.Message):
    __slots__ = ("user", "team", "cost_center", "repo", "key_id", "model")
    USER_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    COST_CENTER_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    user: str
    team: str
    cost_center: str
    repo: str
    key_id: str
    model: str
    def __init__(self, user: _Optional[str] = ..., team: _Optional[str] = ..., cost_center: _Optional[str] = ..., repo: _Optional[str] = ..., key_id: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("id", "action", "scope", "budget_id", "reason", "spend_usd", "limit_usd", "since_ms", "until_ms", "route_from", "route_to", "override_hint")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[Verdict.Action]
        PAUSE: _ClassVar[Verdict.Action]
        ROUTE: _ClassVar[Verdict.Action]
    ACTION_UNSPECIFIED: Verdict.Action
    PAUSE: Verdict.Action
    ROUTE: Verdict.Action
    ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SPEND_USD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_USD_FIELD_NUMBER: _ClassVar[int]
    SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FROM_FIELD_NUMBER: _ClassVar[int]
    ROUTE_TO_FIELD_NUMBER: _ClassVar[int]
    OVERRIDE_HINT_FIELD_NUMBER: _ClassVar[int]
    id: str
    action: Verdict.Action
    scope: Scope
    budget_id: str
    reason: str
    spend_usd: float
    limit_usd: float
    since_ms: int
    until_ms: int
    route_from: str
    route_to: str
    override_hint: str
    def __init__(self, id: _Optional[str] = ..., action: _Optional[_Union[Verdict.Action, str]] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., budget_id: _Optional[str] = ..., reason: _Optional[str] = ..., spend_usd: _Optional[float] = ..., limit_usd: _Optional[float] = ..., since_ms: _Optional[int] = ..., until_ms: _Optional[int] = ..., route_from: _Optional[str] = ..., route_to: _Optional[str] = ..., override_hint: _Optional[str] = ...) -> None: ...

class BudgetState(_message.Message):
    __slots__ = ("budget_id", "scope", "limit_usd", "spend_usd", "period_start_ms", "period_end_ms", "state", "lifted")
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_USD_FIELD_NUMBER: _ClassVar[int]
    SPEND_USD_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_MS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LIFTED_FIELD_NUMBER: _ClassVar[int]
    budget_id: str
    scope: Scope
    limit_usd: float
    spend_usd: float
    period_start_ms: int
    period_end_ms: int
    state: str
    lifted: bool
    def __init__(self, budget_id: _Optional[str] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., limit_usd: _Optional[float] = ..., spend_usd: _Optional[float] = ..., period_start_ms: _Optional[int] = ..., period_end_ms: _Optional[int] = ..., state: _Optional[str] = ..., lifted: _Optional[bool] = ...) -> None: ...
