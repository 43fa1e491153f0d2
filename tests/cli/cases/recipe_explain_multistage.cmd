recipe explain $SHARED/recipes/mergekit-examples/docs-multimerge-example.yml --layers 2
