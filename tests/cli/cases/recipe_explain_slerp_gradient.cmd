recipe explain $SHARED/recipes/real/slerp-lazymergekit-mistral-32-layers.yml
