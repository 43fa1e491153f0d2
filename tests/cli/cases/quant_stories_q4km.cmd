quant $SHARED/real-models/stories260K-family/stories260K-base.Q4_K_M.gguf --reference $SHARED/real-models/stories260K-family/stories260K-base.safetensors --top 3 -q
