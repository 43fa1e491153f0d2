quant $SHARED/real-gguf/gguf/model-Q4_0.gguf --plan base=q9_k
