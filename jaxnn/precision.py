"""The precision contract: what ``compute_dtype`` means on each backend.

JAX's defaults differ by backend: on a GPU a float32 matrix product runs in TF32
(10-bit mantissa) and on a TPU in one bfloat16 pass, while the CPU computes true
float32. jaxnn makes ``"float32"`` mean float32 everywhere (every matrix product of
the model, forward and backward, at ``Precision.HIGHEST``), so an experiment gives
the same numbers, up to float32 rounding, on CPU, GPU and TPU. The faster modes are
explicit:

===================  =====================  ============================  =====================
``compute_dtype``    CPU                    GPU (Ampere and newer)        TPU
===================  =====================  ============================  =====================
``"float32"``        float32                float32 (no TF32)             float32 (6 bf16 passes)
``"tensorfloat32"``  float32                TF32 tensor cores             3 bf16 passes
``"bfloat16"``       bfloat16 (slow)        bfloat16 tensor cores         bfloat16 (native)
``"float16"``        float16 (slow)         float16 tensor cores          float16
``"auto"``           ``"float32"``          ``"float32"``                 ``"bfloat16"``
===================  =====================  ============================  =====================

In every mode the parameters, the optimizer state and the loss stay float32: the
bfloat16 and float16 modes cast the parameters and inputs for the forward (and so the
backward) pass and return float32 outputs. ``predict`` and ``evaluate`` take the same
``compute_dtype``, so they reproduce a fit's validation numbers. docs/benchmarks.md has
the speed each mode buys on a GPU.
"""

# compute_dtype -> (the dtype the model computes in, JAX's matmul precision name)
MODES = {
    "float32": ("float32", "float32"),
    "tensorfloat32": ("float32", "tensorfloat32"),
    "bfloat16": ("bfloat16", "bfloat16"),
    "float16": ("float16", "bfloat16"),
}
COMPUTE_DTYPES = tuple(MODES)
