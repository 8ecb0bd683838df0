#!/bin/sh
# Kickstart reader for the testbed installer: ksparse.sh KS_FILE SCRIPT_DIR > PLAN
#
# Turns a flattened kickstart (the factory resolves %include before serving it) into a plan of
# tab-separated records that keep the kickstart line number, so every later error can say
# "The following problem occurred on line N of the kickstart file" like anaconda does:
#   C <line> <word>...        a command and its words, quotes removed (like shlex in pykickstart)
#   K <line> <package>        one line of %packages
#   S <line> <n> <word>...    a %post header; its body is in SCRIPT_DIR/ks-script-<n>
#   X <line> <section> [name] a section the testbed skips (%pre, %addon <name>, %anaconda, ...)
#   E <line> <message>        a syntax error (unterminated quote or section)
# Shell words are split here, not with `eval`, because hashes like $6$salt$... must stay literal.
exec awk -v scriptdir="$2" '
function tokenize(s,    i, c, q, tok, have, n) {
	n = 0; tok = ""; have = 0; q = ""
	for (i = 1; i <= length(s); i++) {
		c = substr(s, i, 1)
		if (q == "\047") { if (c == "\047") q = ""; else tok = tok c; continue }
		if (q == "\"") {
			if (c == "\\" && i < length(s)) { i++; tok = tok substr(s, i, 1); continue }
			if (c == "\"") q = ""; else tok = tok c
			continue
		}
		if (c == "\047" || c == "\"") { q = c; have = 1; continue }
		if (c == "\\" && i < length(s)) { i++; tok = tok substr(s, i, 1); have = 1; continue }
		if (c == " " || c == "\t") { if (have) { T[++n] = tok; tok = ""; have = 0 }; continue }
		if (c == "#" && !have) break
		tok = tok c; have = 1
	}
	if (q != "") return -1
	if (have) T[++n] = tok
	return n
}
function emit(kind, n,    i, out) {
	out = kind "\t" NR
	for (i = 1; i <= n; i++) out = out "\t" T[i]
	print out
}
BEGIN { section = ""; nscript = 0 }
{
	sub(/\r$/, "")
	line = $0
	if (section == "post") {
		if (line ~ /^%end[ \t]*$/) { close(script); section = ""; next }
		print line > script
		next
	}
	if (section != "" && line ~ /^%end[ \t]*$/) { section = ""; next }
	if (section == "packages") {
		n = tokenize(line)
		if (n > 0) print "K\t" NR "\t" T[1]
		next
	}
	if (section != "") next
	if (line ~ /^[ \t]*(#.*)?$/) next
	n = tokenize(line)
	if (n < 0) { print "E\t" NR "\tNo closing quotation"; next }
	if (T[1] == "%packages") { section = "packages"; emit("P", n); next }
	if (T[1] == "%post") {
		nscript++; section = "post"; script = scriptdir "/ks-script-" nscript
		printf "" > script
		out = "S\t" NR "\t" nscript
		for (i = 2; i <= n; i++) out = out "\t" T[i]
		print out
		next
	}
	# %addon also names the add-on, so the installer can say which one it skipped.
	if (T[1] == "%addon") { section = "addon"; print "X\t" NR "\t" T[1] "\t" T[2]; next }
	if (T[1] ~ /^%/) { section = substr(T[1], 2); print "X\t" NR "\t" T[1]; next }
	emit("C", n)
}
END { if (section != "") print "E\t" NR "\tSection %" section " does not end with %end." }
' "$1"
