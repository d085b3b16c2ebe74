/*
 * main.c - timeglass-ui, the dashboard as a program of its own, for
 * development and the tests in tests/ui/ (the timeglass binary runs the
 * same code as `timeglass ui`).
 */
#include "ui.h"

int main(int argc, char **argv)
{
	return tg_cmd_ui(argc, argv);
}
