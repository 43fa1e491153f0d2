quant $SHARED/real-models/stories260K-family/stories260K-base.Q8_0.gguf --reference $SHARED/real-models/stories260K-family/stories260K-base.f32.gguf --imatrix $SHARED/real-gguf/source/imatrix.gguf
