inspect $SHARED/real-gguf/gguf/model-Q4_K_M.gguf
