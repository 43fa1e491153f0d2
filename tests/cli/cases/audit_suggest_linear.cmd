audit $GEN/tiny/recipes/linear.yml --models-dir $GEN -q --target tiny/donor1=0.5 --suggest out.yml --per filter
