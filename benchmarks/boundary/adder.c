/* adder.c: add() behind the adder contract's vtable. */
const adder_t adder = {
    .struct_size = sizeof(adder_t),
    .add = add,
};
