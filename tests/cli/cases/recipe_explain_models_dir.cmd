recipe explain $GEN/tiny/recipes/linear.yml --models-dir $GEN
