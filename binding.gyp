{
  # The source list lives in native/sources.json so that this file and
  # CMakeLists.txt compile exactly the same files.
  "targets": [
    {
      "target_name": "ringtree",
      "sources": ["<!@(node -p \"require('./native/sources.json').join(' ')\")"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "RINGTREE_BUILD_SYSTEM=\"node-gyp\""],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=c++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O3", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "ldflags": ["-static-libstdc++", "-static-libgcc", "-pthread"],
      "libraries": ["-ldl"]
    }
  ]
}
