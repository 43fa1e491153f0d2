inspect --brief $SHARED/real-models/stories260K-family/stories260K-base.Q4_K_M.gguf
