"""TradingStack operator: reconciles a TradingStack custom resource into the Quantum Trader platform."""

API_GROUP = "trading.quantumtrader.dev"
API_VERSION = "v1alpha1"
KIND = "TradingStack"
PLURAL = "tradingstacks"
