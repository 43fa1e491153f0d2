quant model.gguf
