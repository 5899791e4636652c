"""Stage 4, the writer: streaming safetensors shards, the staging directory (lock, resume state, atomic
commit), and the finished output (index, report, config and tokenizer files).

Takes bytes and JSON documents; knows no kernels, plans or checkpoints.
"""
