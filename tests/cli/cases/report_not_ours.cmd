report $GEN/demo/truth.json -o out
