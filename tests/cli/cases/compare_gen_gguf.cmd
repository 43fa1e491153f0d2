compare $GEN/tiny/merged-linear $GEN/tiny/gguf/merged-linear-F32.gguf $GEN/tiny/gguf/merged-linear-F16.gguf -q
