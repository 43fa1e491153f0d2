provenance $GEN/tiny/merged-passthrough $GEN/tiny/donor1 $GEN/tiny/donor2 -q --emit-recipe $TMP/p.yml
