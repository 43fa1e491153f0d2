quant $SHARED/real-gguf/gguf/model-MIXED.gguf --reference $SHARED/real-gguf/source/model-f32.safetensors --imatrix $SHARED/real-gguf/source/imatrix.gguf --top 5 -q
