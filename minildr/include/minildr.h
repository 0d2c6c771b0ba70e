/* minildr.h: what every minildr plugin may include.
 *
 * A plugin is built with `minildr.build` (or `python -m minildr build`),
 * which compiles your sources with these rules:
 *
 *   - Everything is hidden by default (-fvisibility=hidden). Only what the
 *     exports header declares is visible to the host; a `static` function,
 *     or any function the header does not declare, cannot be looked up.
 *   - The exports header is included into every source file first, so the
 *     compiler checks each definition against its declaration.
 *   - Exported variables are declared `extern` in the exports header and
 *     defined in exactly one source file.
 *   - MINILDR_PLUGIN_NAME and MINILDR_PLUGIN_VERSION are defined as string
 *     literals with the name and version given to build().
 *
 * The host compares MINILDR_ABI_VERSION (stamped into the plugin's
 * manifest) with its own before loading anything.
 */
#ifndef MINILDR_H
#define MINILDR_H

#define MINILDR_ABI_VERSION 1

#ifndef MINILDR_PLUGIN_NAME
#define MINILDR_PLUGIN_NAME "unknown"
#endif
#ifndef MINILDR_PLUGIN_VERSION
#define MINILDR_PLUGIN_VERSION "0.0.0"
#endif

#endif /* MINILDR_H */
