inspect --brief $SHARED/real-gguf/gguf/model-IQ1_S.gguf
