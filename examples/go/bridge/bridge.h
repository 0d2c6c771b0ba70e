/* What the Go bridge exports, as C sees it: minildr.course.golang.build_c_shared
 * records these types in the manifest, and checks them against the header
 * Go generates from the //export comments. */
int go_add(int a, int b);
int go_count_words(char *text);
char *go_runtime_version(void);
