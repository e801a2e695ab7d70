#!/bin/sh
# Warm-up step: turns the sample project the image carries in /workspace/tally
# into a git repository with a short history, so a child starts with a
# checkout `git log`, `git diff` and `git commit` work in. Dates and names
# are fixed: every build makes the same commits, with the same ids.
set -eu
cd /workspace/tally

# Root's identity, for the children's own commits too.
git config --global user.name 'Sandbox Agent'
git config --global user.email 'agent@sandbox.invalid'
git config --global init.defaultBranch main

commit() {
	when=$1
	message=$2
	shift 2
	git add -- "$@"
	GIT_AUTHOR_NAME='Tally Maintainer' GIT_AUTHOR_EMAIL='maintainer@tally.invalid' \
		GIT_COMMITTER_NAME='Tally Maintainer' GIT_COMMITTER_EMAIL='maintainer@tally.invalid' \
		GIT_AUTHOR_DATE="$when" GIT_COMMITTER_DATE="$when" \
		git commit -q -m "$message"
}

git init -q
commit '2026-01-05T10:00:00Z' 'Count lines, words and bytes of stdin' README.md Makefile .gitignore src
commit '2026-01-06T14:30:00Z' 'Add unit tests (make test)' tests
commit '2026-01-08T09:15:00Z' 'Add a JSON report script in Node' scripts
test -z "$(git status --porcelain)"
