"""The only module that talks to the Kubernetes API: apply, list, delete, patch status, events.

lightkube errors and transport failures are converted here into the domain errors of `tradingstack.errors`.
"""
