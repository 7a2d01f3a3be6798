"""StreamRisk: real-time transaction-risk stream processing on Kafka."""

__version__ = "0.1.0"
