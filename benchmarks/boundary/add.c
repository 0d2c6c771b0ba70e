/* add.c: the one small function every boundary in bench_boundaries.py calls.
 *
 * It is compiled three ways: into a minildr plugin (with adder.c), into a
 * cffi API-mode extension module, and into a command-line program
 * (add_main.c), so each boundary runs exactly the same machine code. */
int add(int a, int b)
{
    return a + b;
}
