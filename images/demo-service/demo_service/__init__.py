"""Reference trading service: serves the TradingStack health contract against real Redis and Postgres."""
