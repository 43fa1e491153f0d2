recipe explain $SHARED/recipes/real/passthrough-scale-filters-one-space-indent.yml
