inspect --brief $SHARED/real-gguf/gguf/model-MIXED.gguf
