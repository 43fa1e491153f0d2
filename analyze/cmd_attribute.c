/* cmd_attribute.c - placeholder until the command lands. */
#include <stdio.h>

#include "cli.h"
#include "mergescope/banned.h"

int cmd_attribute(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "mergescope: 'attribute' is not implemented yet\n");
    return MS_EXIT_FAIL;
}
