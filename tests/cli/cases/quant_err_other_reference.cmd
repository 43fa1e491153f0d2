quant $SHARED/real-gguf/gguf/model-Q4_0.gguf --reference $SHARED/real-models/stories260K-family/stories260K-base.safetensors -q
