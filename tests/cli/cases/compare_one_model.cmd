compare just-one-model
