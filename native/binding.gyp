{
  "targets": [
    {
      "target_name": "dkfac_native",
      "sources": ["src/addon.cc", "src/conv.cc", "src/gemm.cc", "src/pool.cc", "src/bn.cc", "src/eltwise.cc", "src/linalg.cc", "src/kfac.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-O3", "-march=native", "-fopenmp", "-fexceptions", "-ffp-contract=off"],
      "libraries": ["-ldnnl", "-lopenblas", "-fopenmp"]
    }
  ]
}
