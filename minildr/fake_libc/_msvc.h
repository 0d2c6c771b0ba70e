/* Force-included (cl /FI) when minildr.build reads an exports header with
 * MSVC: the header's Microsoft keywords, taken out of the text the C parser
 * reads. They are defined here because cl's /D option cannot define a
 * function-like macro (gcc's -D can: see build.preprocess_command). */
#define __declspec(x)
