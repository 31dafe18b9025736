// cuBLAS, loaded when the first CUDA backend starts instead of when vireo starts: a process that
// links it pays about 150 MB of resident memory for its relocations, CPU-only runs included, and
// a CUDA build could not start at all where the library is missing.
#pragma once
#include <cublas_v2.h>

namespace vireo::cuda {

struct CublasApi {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  // cublasGemmEx, spelled out: C++ overloads the name.
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*, const void*,
                            cudaDataType, int, const void*, cudaDataType, int, const void*, void*, cudaDataType, int,
                            cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
};

// The loaded library; throws vireo::Error naming it when it cannot be loaded.
const CublasApi& cublas();

}  // namespace vireo::cuda
