//! YAML tags: serde_yaml_ng honours the core schema's (`!!str`, `!!int`, …) but drops others
//! such as `!!binary` without a word, so `key: !!binary aGk=` would load as the text `aGk=`.
//! This pass walks the parser's events (which keep every tag) and reports each tag the config
//! does not understand at its field path; it never builds a value.

use yaml_rust2::parser::{Event, Parser, Tag};

use crate::error::{ConfigError, FieldPath};

/// The `!!` handle once the parser has resolved it (YAML 1.2 §6.8.2.2).
const CORE_HANDLE: &str = "tag:yaml.org,2002:";
/// Core-schema tags that mean what serde_yaml_ng does with them (YAML 1.2 §10.3).
const CORE_TAGS: &[&str] = &["str", "int", "float", "bool", "null", "map", "seq"];

/// Every node whose tag is not one of [`CORE_TAGS`]. Syntax errors are left to the real
/// parser, which reports them with a position.
pub(super) fn unsupported_tags(text: &str) -> Vec<ConfigError> {
    let mut walk = TagWalk::default();
    let mut parser = Parser::new_from_str(text);
    while let Ok((event, _)) = parser.next_token() {
        match event {
            Event::StreamEnd => break,
            Event::Scalar(value, _, _, tag) => {
                walk.node(tag.as_ref(), Some(value));
                walk.complete();
            }
            Event::Alias(_) => {
                walk.node(None, None);
                walk.complete();
            }
            Event::SequenceStart(_, tag) => {
                walk.node(tag.as_ref(), None);
                walk.frames.push(Frame::Sequence { index: 0 });
            }
            Event::MappingStart(_, tag) => {
                walk.node(tag.as_ref(), None);
                walk.frames.push(Frame::Mapping {
                    key: None,
                    expecting_key: true,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                walk.frames.pop();
                walk.complete();
            }
            _ => {}
        }
    }
    walk.errors
}

enum Frame {
    Mapping {
        key: Option<String>,
        expecting_key: bool,
    },
    Sequence {
        index: usize,
    },
}

#[derive(Default)]
struct TagWalk {
    frames: Vec<Frame>,
    errors: Vec<ConfigError>,
}

impl TagWalk {
    /// A node starts: a mapping key (remember it) or a value (check its tag).
    fn node(&mut self, tag: Option<&Tag>, scalar: Option<String>) {
        if let Some(Frame::Mapping {
            key,
            expecting_key: true,
        }) = self.frames.last_mut()
        {
            *key = Some(scalar.unwrap_or_else(|| "?".to_string()));
            return;
        }
        if let Some(tag) = tag
            && !(tag.handle == CORE_HANDLE && CORE_TAGS.contains(&tag.suffix.as_str()))
        {
            self.errors.push(self.path().error(format!(
                "the YAML tag {} is not supported; write the plain value",
                shown(tag)
            )));
        }
    }

    /// A node ended: the enclosing mapping expects its next key, a sequence its next item.
    fn complete(&mut self) {
        match self.frames.last_mut() {
            Some(Frame::Mapping { expecting_key, .. }) => *expecting_key = !*expecting_key,
            Some(Frame::Sequence { index }) => *index += 1,
            None => {}
        }
    }

    fn path(&self) -> FieldPath {
        self.frames
            .iter()
            .fold(FieldPath::root(), |path, frame| match frame {
                Frame::Mapping { key, .. } => path.field(key.as_deref().unwrap_or("?")),
                Frame::Sequence { index } => path.index(*index),
            })
    }
}

/// `!!binary` as written, not its resolved `tag:yaml.org,2002:binary`.
fn shown(tag: &Tag) -> String {
    if tag.handle == CORE_HANDLE {
        format!("!!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}
