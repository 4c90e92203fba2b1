"""spendgate collector: OTLP in, priced spend out (normalise, price, store, roll up, budget)."""
