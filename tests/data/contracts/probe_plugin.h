extern const probe_t probe;
extern const probe_t unsized;
extern const probe_t no_release;
extern long live;
extern long releases;
int not_a_vtable(void);
