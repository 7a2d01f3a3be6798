"""The processor and its parts: pure Python over plain data, no Faust, no aiokafka."""
