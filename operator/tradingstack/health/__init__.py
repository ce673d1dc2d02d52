"""The health contract (pure models and probe mapping) and the dependency checks built on it."""
