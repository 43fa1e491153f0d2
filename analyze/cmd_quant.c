/* cmd_quant.c - placeholder until the command lands. */
#include <stdio.h>

#include "cli.h"
#include "mergescope/banned.h"

int cmd_quant(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "mergescope: 'quant' is not implemented yet\n");
    return MS_EXIT_FAIL;
}
