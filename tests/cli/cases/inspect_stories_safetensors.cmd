inspect $SHARED/real-models/stories260K-family/stories260K-base.safetensors
