{
  # The source list lives in native/sources.json so that this file and
  # CMakeLists.txt compile exactly the same files. Keep the flags below in step
  # with CMakeLists.txt: CI builds through both and compares the results.
  "variables": {
    # glibc hosts get the glibc-2.28 floor shim (native/compat/glibcFloor.cc).
    "ringtree_glibc%": "<!(node -p \"process.report.getReport().header.glibcVersionRuntime ? 1 : 0\")"
  },
  "targets": [
    {
      "target_name": "ringtree",
      "sources": [
        "<!@(node -p \"require('./native/sources.json').join(' ')\")",
        "native/compat/glibcFloor.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native",
        "<(SHARED_INTERMEDIATE_DIR)/ringtree"
      ],
      # nvcc compiles native/cuda/kernels/*.cu into kernelImages.h (embedded
      # fatbins; empty, with the reason, where there is no nvcc) before the
      # sources compile. CMakeLists.txt runs the same script.
      "actions": [
        {
          "action_name": "kernel_images",
          "inputs": [
            "<(module_root_dir)/scripts/build-kernels.sh",
            "<!@(node -p \"require('fs').readdirSync('native/cuda/kernels').filter(f => f.endsWith('.cu')).map(f => 'native/cuda/kernels/' + f).join(' ')\")"
          ],
          "outputs": ["<(SHARED_INTERMEDIATE_DIR)/ringtree/kernelImages.h"],
          "action": ["bash", "<(module_root_dir)/scripts/build-kernels.sh", "<(SHARED_INTERMEDIATE_DIR)/ringtree/kernelImages.h"],
          "message": "nvcc: native/cuda/kernels/*.cu -> kernelImages.h"
        }
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "RINGTREE_BUILD_SYSTEM=\"node-gyp\""],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=c++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O3", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "ldflags": ["-static-libstdc++", "-static-libgcc", "-pthread"],
      "libraries": ["-ldl"],
      "configurations": {
        "Release": { "defines": ["NDEBUG"] }
      },
      "conditions": [
        ["OS=='linux' and ringtree_glibc==1 and target_arch in ('x64', 'arm64')", {
          # One --wrap=SYMBOL per line; see glibcFloor.cc for why.
          "ldflags": ["-Wl,@<(module_root_dir)/native/compat/glibcFloor.wrap"]
        }]
      ]
    }
  ]
}
