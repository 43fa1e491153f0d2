quant $SHARED/real-gguf/source/model.safetensors --reference $SHARED/real-gguf/source/model-f32.gguf --top 2 -q
