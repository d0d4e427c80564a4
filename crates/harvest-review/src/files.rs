//! A patch cut into its files, for a view that lists them and shows one at a time.

/// One file of a patch: its path (as the patch names it: hostile, shown made safe) and
/// its part of the patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedFile {
    pub path: String,
    pub added: usize,
    pub removed: usize,
    pub lines: Vec<String>,
}

/// Split git's patch at each `diff --git` header.
pub fn split_patch(patch: &str) -> Vec<ChangedFile> {
    let mut files: Vec<ChangedFile> = Vec::new();
    // Inside a binary file's data (base85 lines), which is for `git apply`, not for eyes.
    let mut in_binary = false;
    for line in patch.lines() {
        if in_binary && !line.starts_with("diff --git ") {
            continue;
        }
        in_binary = false;
        if line == "GIT binary patch" {
            if let Some(file) = files.last_mut() {
                file.lines.push(
                    "(a binary file: its bytes are not shown; apply brings them as they are)"
                        .into(),
                );
            }
            in_binary = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("diff --git ") {
            // `a/PATH b/PATH`: the new side's name.
            let path = rest.rsplit_once(" b/").map_or(rest, |(_, b)| b).to_owned();
            files.push(ChangedFile {
                path: crate::shown(&path),
                added: 0,
                removed: 0,
                lines: Vec::new(),
            });
        }
        let Some(file) = files.last_mut() else {
            continue;
        };
        if line.starts_with('+') && !line.starts_with("+++") {
            file.added += 1;
        } else if line.starts_with('-') && !line.starts_with("---") {
            file.removed += 1;
        }
        file.lines.push(crate::shown(line));
    }
    files
}

#[cfg(test)]
mod tests {
    use super::split_patch;

    #[test]
    fn a_binary_files_data_is_not_shown() {
        let patch = "diff --git a/logo.png b/logo.png\nnew file mode 100644\nindex 0000000..e69de29\nGIT binary patch\nliteral 12\nTcmZ?l|NsA=|NsA5&;S4c4wRsk\n\nliteral 0\nHcmV?d00001\n\ndiff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-x\n+y\n";
        let files = split_patch(patch);
        assert_eq!(files.len(), 2);
        let shown = files[0].lines.join("\n");
        assert!(shown.contains("a binary file"), "{shown}");
        assert!(!shown.contains("TcmZ"), "{shown}");
        assert_eq!((files[1].added, files[1].removed), (1, 1));
    }

    #[test]
    fn a_patch_splits_into_its_files_with_their_counts() {
        let patch = "diff --git a/x.txt b/x.txt\nindex 1..2 100644\n--- a/x.txt\n+++ b/x.txt\n@@ -1 +1 @@\n-old\n+new\ndiff --git a/y b/y\nnew file mode 100644\n--- /dev/null\n+++ b/y\n@@ -0,0 +1,2 @@\n+a\n+\u{1b}]0;pwned\u{7}b\n";
        let files = split_patch(patch);
        assert_eq!(files.len(), 2);
        assert_eq!(
            (files[0].path.as_str(), files[0].added, files[0].removed),
            ("x.txt", 1, 1)
        );
        assert_eq!(
            (files[1].path.as_str(), files[1].added, files[1].removed),
            ("y", 2, 0)
        );
        assert!(
            files[1].lines.iter().all(|l| !l.contains('\u{1b}')),
            "{:?}",
            files[1].lines
        );
    }
}
