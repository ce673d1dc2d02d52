"""Pure renderers: a parsed TradingStack and its owner reference in, Kubernetes manifests (dicts) out."""
