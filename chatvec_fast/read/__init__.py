"""Stage 1, the reader: checkpoint directories, safetensors headers (validated before any data is used),
config and tokenizer files, and the one byte reader (preadv into caller-owned buffers).

Knows nothing of planning, kernels or writing.
"""
