"""Type stub for the optional compiled module chatvec_fast._cuda (csrc/cuda/bindings.cpp), built where nvcc is.
tests/test_cuda.py checks it against the module's own signatures. Addresses are plain integers: device
pointers (or host pointers with on_device=False) and a cudaStream_t handle; backends/cuda.py packs them."""

MAX_OUTPUTS: int

# inputs: base, chat, cp, then up to 16 vectors: None, or (address, dtype code, scale kind, scales address,
# cols, first_element, block_rows, block_cols, first_scale_row). out_scale: None, or (kind, cols, block_rows,
# block_cols, groups, [scales addresses], amax workspace address).
def run(
    mode: int,
    n: int,
    inputs: list,
    alphas: list[float],
    outs: list[int],
    out_dtype: int,
    out_scale: object,
    count: int,
    stream: int,
    on_device: bool,
) -> None: ...
def device_count() -> tuple[int, str]: ...
def runtime_version() -> int: ...
def driver_version() -> int: ...
