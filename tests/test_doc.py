#!/usr/bin/python3
"""test_doc.py - the manual page, --help and the shell completions agree.

1. man/ttychat.1 renders with `man -l` and groff without a single warning.
2. Every option in `ttychat --help` (chat options) is in the OPTIONS
   section of the page and the reverse; for every command of the command
   table, the options of `ttychat CMD --help` (and of its --help row) are
   those of its subsection under COMMANDS, and every command has one.
3. The FULL-SCREEN CHAT keys and commands are exactly `ttychat keys --man`.
4. The bash completion offers every option of --help, per command, the
   commands, and model names from models.d; the zsh completion names every
   option and, when zsh is installed, completes on a real terminal; the fish
   completion gives each command exactly the options of its --help and,
   when fish is installed, completes (complete -C).
"""
import os
import pty
import re
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from checks import check, report

BIN = os.environ.get("TTYCHAT_BIN", "./ttychat")
SRC = os.environ.get("TTYCHAT_SRCDIR", ".")
MAN = os.path.join(SRC, "man", "ttychat.1")
BASH_COMP = os.path.join(SRC, "scripts", "completions", "bash", "ttychat")
ZSH_DIR = os.path.join(SRC, "scripts", "completions", "zsh")
FISH_COMP = os.path.join(SRC, "scripts", "completions", "fish", "ttychat.fish")
OPT_RE = re.compile(r"(?<![\w\-])(--[a-z0-9][a-z0-9-]*[a-z0-9]|-[a-zA-Z])(?![\w\-])")


def opts(text):
    return set(OPT_RE.findall(text))


def out_of(args, **kw):
    p = subprocess.run(args, capture_output=True, timeout=60, stdin=subprocess.DEVNULL, **kw)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def man_sections(text):
    """{SECTION: text} and {SECTION: {SUBSECTION: text}} of a rendered page."""
    sections, subs = {}, {}
    sec = sub = None
    for line in text.splitlines():
        if re.match(r"^[A-Z][A-Z0-9 .\-]+$", line):
            sec, sub = line.strip(), None
            sections[sec] = ""
            subs[sec] = {}
            continue
        m = re.match(r"^   (\S.*)$", line)
        if sec and m and not line.startswith("    "):
            sub = m.group(1).strip()
            subs[sec][sub] = ""
            continue
        if sec:
            sections[sec] += line + "\n"
            if sub:
                subs[sec][sub] += line + "\n"
    return sections, subs


def help_commands(help_text):
    """The command table of --help: {name: row text}."""
    rows, on, name = {}, False, None
    for line in help_text.splitlines():
        if line.strip() == "commands:":
            on = True
            continue
        if on:
            if not line.strip():
                break
            if line.startswith("  ") and not line.startswith("   "):
                name = line.split()[0]
                rows[name] = line
            elif name:
                rows[name] += " " + line.strip()
    return rows


def bash_complete(words, env):
    """COMPREPLY of the bash completion for WORDS (the last one is being
    completed)."""
    script = 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); ' \
             'COMPREPLY=(); _ttychat; printf "%s\\n" "${COMPREPLY[@]}"'
    p = subprocess.run(["bash", "-c", script, "x", BASH_COMP] + words, capture_output=True, timeout=60, env=env)
    return set(l for l in p.stdout.decode().splitlines() if l)


def fish_table(text):
    """The fish completion's `complete -c ttychat` lines: ({command: options},
    the commands offered first).  Options without a command are the chat's
    (key ""); `__ttychat_history SUB` lines count as history's."""
    opts_of, commands = {}, set()
    for line in text.splitlines():
        if not line.startswith("complete -c ttychat"):
            continue
        w = shlex.split(line)
        cond = w[w.index("-n") + 1].split() if "-n" in w else []
        key = None
        if cond[:1] == ["__ttychat_chat"]:
            key = ""
        elif cond[:1] == ["__ttychat_cmd"]:
            key = cond[1].rstrip(";")
        elif cond[:1] == ["__ttychat_history"]:
            key = "history"
        elif cond[:1] == ["__fish_is_first_arg"] and "-a" in w:
            commands.add(w[w.index("-a") + 1])
        for i, a in enumerate(w[:-1]):
            if key is not None and a in ("-s", "-l", "-o"):
                opts_of.setdefault(key, set()).add(("--" if a == "-l" else "-") + w[i + 1])
    return opts_of, commands


def fish_complete(line, env):
    """The candidates fish offers for LINE (the words before a tab)."""
    p = subprocess.run(["fish", "--no-config", "-c", 'source "$argv[1]"; complete -C"$argv[2]"', FISH_COMP, line],
                       capture_output=True, timeout=60, env=env)
    return set(l.split("\t")[0] for l in p.stdout.decode().splitlines() if l), p.stderr.decode()


def zsh_pty(env, typed):
    """Types each of TYPED (ending in TAB) into an interactive zsh with the
    completion loaded; returns what the terminal showed for each."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe("zsh", ["zsh", "-f", "-i"], env)
    shown = []

    def read(t):
        """What arrives until 1 s of quiet (at most T seconds)."""
        out, end, quiet = b"", time.time() + t, None
        while time.time() < (quiet or end):
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    d = os.read(fd, 65536)
                except OSError:
                    break
                if not d:
                    break
                out += d
                quiet = min(end, time.time() + 1.0)
        return out.decode(errors="replace")

    try:
        os.write(fd, ("PS1='%% '; fpath=(%s $fpath); autoload -U compinit; compinit -u -D; "
                      "zstyle ':completion:*' list-prompt ''\n" % ZSH_DIR).encode())
        read(3)
        for t in typed:
            os.write(fd, b"\x15" + t.encode())
            shown.append(read(3))
        os.write(fd, b"\x15exit\n")
        read(1)
    finally:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
        os.waitpid(pid, 0)
        os.close(fd)
    return shown


def main():
    if not os.access(BIN, os.X_OK):
        print("SKIP: %s is not built" % BIN)
        return 77
    if not shutil.which("groff"):
        print("SKIP: groff is not installed")
        return 77

    # 1. renders without warnings
    env = dict(os.environ, LC_ALL="C.UTF-8", MANROFFSEQ="", MANWIDTH="80")
    if shutil.which("man"):
        p = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", MAN], capture_output=True,
                           env=env, timeout=60)
        check(p.returncode == 0 and p.stderr == b"", "man -l --warnings: %r" % p.stderr.decode(errors="replace"))
        p = subprocess.run(["man", "-l", MAN], capture_output=True, env=dict(env, MANPAGER="cat", PAGER="cat"),
                           timeout=60)
        check(p.returncode == 0 and b"SYNOPSIS" in p.stdout and p.stderr == b"",
              "man -l renders (%d, %r)" % (p.returncode, p.stderr[:200]))
    else:
        print("note: man is not installed; checked with groff only")
    p = subprocess.run(["groff", "-man", "-ww", "-z", MAN], capture_output=True, timeout=60)
    check(p.returncode == 0 and p.stderr == b"", "groff -ww: %r" % p.stderr.decode(errors="replace"))
    p = subprocess.run(["groff", "-man", "-Tascii", "-P-cbou", "-rLL=200n", MAN], capture_output=True, timeout=60)
    page = p.stdout.decode(errors="replace")
    sections, subs = man_sections(page)
    for s in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "FULL-SCREEN CHAT", "MODELS.D", "FILES",
              "ENVIRONMENT", "EXIT STATUS", "EXAMPLES"):
        check(s in sections, "the page has a %s section" % s)
    for var in ("TTYCHAT_MODELS_DIR", "TTYCHAT_PASSPHRASE_FILE", "TTYCHAT_PASSPHRASE_FD", "TTYCHAT_CPU", "NO_COLOR",
                "CI", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        check(var in sections.get("ENVIRONMENT", ""), "ENVIRONMENT names %s" % var)
    for code in ("0", "1", "2", "3", "4", "5", "6", "130"):
        check(re.search(r"^\s+%s\s+\S" % code, sections.get("EXIT STATUS", ""), re.M),
              "EXIT STATUS documents %s" % code)

    # 2. --help and the page agree
    rc, help_text, err = out_of([BIN, "--help"])
    check(rc == 0, "ttychat --help exits 0")
    m = re.search(r"^chat and one-shot options:\n(.*?)^exit status", help_text, re.M | re.S)
    check(m is not None, "--help has the chat options")
    help_opts = opts(m.group(1)) if m else set()
    man_opts = opts(sections.get("OPTIONS", ""))
    check(len(help_opts) > 20, "--help lists the chat options: %r" % sorted(help_opts))
    check(help_opts - man_opts == set(), "chat options in --help but not in the page: %r" % sorted(help_opts - man_opts))
    check(man_opts - help_opts == set(), "chat options in the page but not in --help: %r" % sorted(man_opts - help_opts))
    rows = help_commands(help_text)
    man_cmds = {}
    for title, text in subs.get("COMMANDS", {}).items():
        w = title.split()
        if len(w) >= 2 and w[0] == "ttychat":
            man_cmds[w[1]] = opts(text)
    check(len(rows) >= 9, "--help lists the commands: %r" % sorted(rows))
    check(set(rows) == set(man_cmds), "commands in --help %r vs the page %r" % (sorted(rows), sorted(man_cmds)))
    cmd_opts = {}
    for name, row in rows.items():
        rc, o, e = out_of([BIN, name, "--help"])
        cmd_opts[name] = opts(row.split(None, 1)[1] if len(row.split(None, 1)) > 1 else "") | opts(o + e)
        cmd_opts[name].discard("--help")
        mo = man_cmds.get(name, set())
        check(cmd_opts[name] - mo == set(),
              "%s: options in --help but not in the page: %r" % (name, sorted(cmd_opts[name] - mo)))
        check(mo - cmd_opts[name] == set(),
              "%s: options in the page but not in --help: %r" % (name, sorted(mo - cmd_opts[name])))

    # 3. the keys section is `ttychat keys --man`
    rc, keys_man, err = out_of([BIN, "keys", "--man"])
    src = open(MAN, encoding="utf-8").read()
    m = re.search(r"^\.\\\" BEGIN KEYS[^\n]*\n(.*?)^\.\\\" END KEYS", src, re.M | re.S)
    check(rc == 0 and m is not None and m.group(1) == keys_man,
          "the keys section matches `ttychat keys --man` (run `make update-man`)")

    # 4. completions
    tmp = tempfile.mkdtemp(prefix="test_doc.")
    try:
        conf = os.path.join(tmp, "config")
        os.makedirs(os.path.join(conf, "ttychat", "models.d"))
        with open(os.path.join(conf, "ttychat", "models.d", "compmodel.json"), "w") as f:
            f.write('{"name": "compmodel", "file": "/nonexistent/compmodel.gguf"}\n')
        cenv = dict(os.environ, XDG_CONFIG_HOME=conf, PATH=os.path.dirname(os.path.abspath(BIN)) + ":" +
                    os.environ.get("PATH", ""), HOME=tmp)
        if shutil.which("bash"):
            got = bash_complete(["ttychat", ""], cenv)
            check(set(rows) <= got, "bash: commands offered: %r" % sorted(got))
            got = bash_complete(["ttychat", "-"], cenv)
            check(help_opts <= got, "bash: chat options missing: %r" % sorted(help_opts - got))
            check(got - help_opts <= {"--json=final"}, "bash: options not in --help: %r" % sorted(got - help_opts))
            for name in rows:
                if name == "history":
                    got = set()
                    for sub in ("list", "export", "passwd"):
                        got |= bash_complete(["ttychat", "history", sub, "-"], cenv)
                else:
                    got = bash_complete(["ttychat", name, "-"], cenv)
                check(got == cmd_opts[name], "bash: %s: %r vs --help %r" % (name, sorted(got), sorted(cmd_opts[name])))
            got = bash_complete(["ttychat", "-m", "comp"], cenv)
            check("compmodel" in got, "bash: -m offers models.d names: %r" % sorted(got))
            got = bash_complete(["ttychat", "pull", "comp"], cenv)
            check("compmodel" in got, "bash: pull offers models.d names: %r" % sorted(got))
            got = bash_complete(["ttychat", "--kv-type", ""], cenv)
            check(got == {"f16", "q8_0", "q5_0", "q5_1", "q4_0", "q4_1", "iq4_nl", "q3r"}, "bash: --kv-type values: %r" % sorted(got))
        zsh_text = open(os.path.join(ZSH_DIR, "_ttychat"), encoding="utf-8").read()
        every = set(help_opts)
        for name in rows:
            every |= cmd_opts[name]
            check(re.search(r"\b%s:" % re.escape(name), zsh_text), "zsh: command %s" % name)
        missing = [o for o in sorted(every) if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(o), zsh_text)]
        check(not missing, "zsh: options not in the completion: %r" % missing)
        if shutil.which("zsh"):
            p = subprocess.run(["zsh", "-n", os.path.join(ZSH_DIR, "_ttychat")], capture_output=True, timeout=30)
            check(p.returncode == 0, "zsh -n: %r" % p.stderr)
            zenv = dict(cenv, TERM="dumb", ZDOTDIR=tmp)
            shown = zsh_pty(zenv, ["ttychat --kv-t\t", "ttychat --kv-type \t\t", "ttychat pul\t",
                                   "ttychat -m comp\t"])
            check("--kv-type" in shown[0], "zsh: completes --kv-t: %r" % shown[0][-200:])
            check("q8_0" in shown[1], "zsh: --kv-type values: %r" % shown[1][-200:])
            check("pull" in shown[2], "zsh: completes a command: %r" % shown[2][-200:])
            check("compmodel" in shown[3], "zsh: completes a model name: %r" % shown[3][-200:])
        else:
            print("note: zsh is not installed; its completion was only read")
        fish_opts, fish_cmds = fish_table(open(FISH_COMP, encoding="utf-8").read())
        check(fish_cmds == set(rows), "fish: commands %r vs --help %r" % (sorted(fish_cmds), sorted(rows)))
        check(fish_opts.get("") == help_opts, "fish: chat options: missing %r, not in --help %r" % (
            sorted(help_opts - fish_opts.get("", set())), sorted(fish_opts.get("", set()) - help_opts)))
        for name in rows:
            got = fish_opts.get(name, set())
            check(got == cmd_opts[name], "fish: %s: %r vs --help %r" % (name, sorted(got), sorted(cmd_opts[name])))
        if shutil.which("fish"):
            p = subprocess.run(["fish", "--no-config", "-n", FISH_COMP], capture_output=True, timeout=30)
            check(p.returncode == 0 and not p.stderr, "fish -n: %r" % p.stderr)
            for line, want in (("ttychat --kv-type ", {"f16", "q8_0", "q5_0", "q5_1", "q4_0", "q4_1", "iq4_nl", "q3r"}), ("ttychat pul", {"pull"}),
                               ("ttychat -m comp", {"compmodel"}), ("ttychat pull comp", {"compmodel"}),
                               ("ttychat history export --format ", {"md", "json"}),
                               ("ttychat pull --sh", {"--sha256"})):
                got, err = fish_complete(line, cenv)
                check(got == want and not err, "fish: %r completes to %r, got %r %r" % (line, sorted(want),
                                                                                      sorted(got), err[-200:]))
        else:
            print("note: fish is not installed; its completion was only read")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    return report()


if __name__ == "__main__":
    sys.exit(main())
