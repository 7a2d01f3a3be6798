"""What touches Faust's and aiokafka's internals: the app and its state table, the transport, the
in-loop consumer, restore, static membership, the producer appender and transactions."""
