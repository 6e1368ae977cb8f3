//! Lowering: `syn::File` → [`ItemTree`].
//!
//! Runs inside the `parse` query, on one thread, without waiting on any other
//! query between `syn::parse_file` and the end of lowering: proc-macro2 keeps
//! span locations in a thread-local source map, so the whole parse-and-lower
//! step must stay on the thread (and fiber) that started it.
//!
//! Function bodies are walked with `syn::visit` for path calls and panic sites;
//! items nested in bodies are skipped, and macro bodies are not expanded (only
//! the panic macros themselves are recognised). An item-position macro whose
//! body is plain items (`cfg_rt! { pub mod runtime; }`, `cfg_if! { .. }`
//! branches) is read as those items; see `wrapped_items`.

use std::sync::Arc;

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit::Visit;

use crate::item_tree::{
    AssocFn, BinOp, CExpr, Call, ConstItem, FnBody, IntTy, Item, ItemKind, ItemTree, Name,
    PanicSite, Path, Pos, RawVis, UnOp, UseImport, UseKind,
};

/// Deepest const expression nesting that is lowered; deeper is unsupported.
const MAX_EXPR_DEPTH: u32 = 256;

/// Lowers a parsed file.
pub fn lower_file(file: &syn::File) -> ItemTree {
    ItemTree {
        items: lower_items(&file.items),
    }
}

fn pos(span: Span) -> Pos {
    let lc = span.start();
    Pos {
        line: lc.line as u32,
        col: lc.column as u32 + 1,
    }
}

fn name(ident: &syn::Ident) -> Name {
    let s = ident.to_string();
    Arc::from(s.strip_prefix("r#").unwrap_or(&s))
}

fn vis(v: &syn::Visibility) -> RawVis {
    match v {
        syn::Visibility::Public(_) => RawVis::Public,
        syn::Visibility::Inherited => RawVis::Private,
        syn::Visibility::Restricted(r) => {
            if r.path.is_ident("crate") {
                RawVis::Crate
            } else if r.path.is_ident("super") {
                RawVis::Super
            } else if r.path.is_ident("self") {
                RawVis::SelfMod
            } else {
                RawVis::Crate
            }
        }
    }
}

fn path(p: &syn::Path) -> Path {
    Path {
        global: p.leading_colon.is_some(),
        segments: p.segments.iter().map(|s| name(&s.ident)).collect(),
    }
}

fn has_attr(attrs: &[syn::Attribute], id: &str) -> bool {
    attrs.iter().any(|a| a.path().is_ident(id))
}

/// `#[path = ".."]`, else the first `#[cfg_attr(pred, path = "..")]` (`cfg`
/// is ignored, so the first candidate wins).
fn path_attr(attrs: &[syn::Attribute]) -> Option<String> {
    let plain = attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => str_value(&nv.value),
        _ => None,
    });
    plain.or_else(|| {
        attrs.iter().find_map(|a| {
            if !a.path().is_ident("cfg_attr") {
                return None;
            }
            let parser = syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated;
            let metas = a.parse_args_with(parser).ok()?;
            metas.iter().skip(1).find_map(|m| match m {
                syn::Meta::NameValue(nv) if nv.path.is_ident("path") => str_value(&nv.value),
                _ => None,
            })
        })
    })
}

fn str_value(e: &syn::Expr) -> Option<String> {
    match e {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Some(s.value()),
        _ => None,
    }
}

fn proc_macro_name(attrs: &[syn::Attribute], fn_name: &Name) -> Option<Name> {
    for a in attrs {
        if a.path().is_ident("proc_macro") || a.path().is_ident("proc_macro_attribute") {
            return Some(fn_name.clone());
        }
        if a.path().is_ident("proc_macro_derive") {
            let mut derived = None;
            let _ = a.parse_nested_meta(|m| {
                if derived.is_none() {
                    if let Some(id) = m.path.get_ident() {
                        derived = Some(name(id));
                    }
                }
                if m.input.peek(syn::token::Paren) {
                    let content;
                    syn::parenthesized!(content in m.input);
                    let _ = content.parse::<proc_macro2::TokenStream>();
                }
                Ok(())
            });
            return derived;
        }
    }
    None
}

fn lower_items(items: &[syn::Item]) -> Vec<Item> {
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        match wrapped_items(it) {
            Some(inner) => out.extend(lower_items(&inner)),
            None => out.push(lower_item(it)),
        }
    }
    out
}

/// The items of an item-position macro that only wraps plain items: a
/// `name! { items }` whose body parses as items (cfg wrappers such as
/// tokio's `cfg_rt! { pub mod runtime; }`), or every branch of
/// `cfg_if! { if #[cfg(..)] { items } else { items } }` (`cfg` is ignored, so
/// all branches count). This is not macro expansion: a macro whose body is
/// anything but items (`bitflags!`, `lazy_static!`, ...) stays opaque.
fn wrapped_items(it: &syn::Item) -> Option<Vec<syn::Item>> {
    let syn::Item::Macro(m) = it else {
        return None;
    };
    if m.ident.is_some() || m.mac.path.is_ident("macro_rules") {
        return None;
    }
    if !matches!(m.mac.delimiter, syn::MacroDelimiter::Brace(_)) {
        return None;
    }
    let last = m.mac.path.segments.last()?.ident.to_string();
    if last == "cfg_if" {
        let mut items = Vec::new();
        for tt in m.mac.tokens.clone() {
            if let proc_macro2::TokenTree::Group(g) = tt {
                if g.delimiter() == proc_macro2::Delimiter::Brace {
                    items.extend(syn::parse2::<syn::File>(g.stream()).ok()?.items);
                }
            }
        }
        return Some(items);
    }
    let file = syn::parse2::<syn::File>(m.mac.tokens.clone()).ok()?;
    (!file.items.is_empty()).then_some(file.items)
}

fn item(name: Name, v: RawVis, p: Pos, kind: ItemKind) -> Item {
    Item {
        name,
        vis: v,
        pos: p,
        kind,
    }
}

fn lower_item(it: &syn::Item) -> Item {
    let unnamed: Name = Arc::from("");
    match it {
        syn::Item::Mod(m) => item(
            name(&m.ident),
            vis(&m.vis),
            pos(m.ident.span()),
            ItemKind::Mod {
                body: m.content.as_ref().map(|(_, items)| lower_items(items)),
                path_attr: path_attr(&m.attrs),
            },
        ),
        syn::Item::Use(u) => {
            let mut out = Vec::new();
            flatten_use(
                &u.tree,
                &mut Vec::new(),
                u.leading_colon.is_some(),
                &mut out,
            );
            item(
                unnamed,
                vis(&u.vis),
                pos(u.use_token.span),
                ItemKind::Use(out),
            )
        }
        syn::Item::ExternCrate(e) => {
            let krate = name(&e.ident);
            let alias = e.rename.as_ref().map(|(_, id)| name(id));
            item(
                alias.unwrap_or_else(|| krate.clone()),
                vis(&e.vis),
                pos(e.ident.span()),
                ItemKind::ExternCrate { krate },
            )
        }
        syn::Item::Const(c) => item(
            name(&c.ident),
            vis(&c.vis),
            pos(c.ident.span()),
            ItemKind::Const(Arc::new(const_item(&c.ty, &c.expr))),
        ),
        syn::Item::Static(s) => item(
            name(&s.ident),
            vis(&s.vis),
            pos(s.ident.span()),
            ItemKind::Static(Arc::new(const_item(&s.ty, &s.expr))),
        ),
        syn::Item::Fn(f) => {
            let n = name(&f.sig.ident);
            item(
                n.clone(),
                vis(&f.vis),
                pos(f.sig.ident.span()),
                ItemKind::Fn {
                    body: Arc::new(summarize_block(&f.block)),
                    proc_macro: proc_macro_name(&f.attrs, &n),
                },
            )
        }
        syn::Item::Struct(s) => item(
            name(&s.ident),
            vis(&s.vis),
            pos(s.ident.span()),
            ItemKind::Struct,
        ),
        syn::Item::Enum(e) => item(
            name(&e.ident),
            vis(&e.vis),
            pos(e.ident.span()),
            ItemKind::Enum {
                variants: e.variants.iter().map(|v| name(&v.ident)).collect(),
            },
        ),
        syn::Item::Union(u) => item(
            name(&u.ident),
            vis(&u.vis),
            pos(u.ident.span()),
            ItemKind::Union,
        ),
        syn::Item::Trait(t) => {
            let fns = t
                .items
                .iter()
                .filter_map(|ti| match ti {
                    syn::TraitItem::Fn(f) => f.default.as_ref().map(|b| AssocFn {
                        name: name(&f.sig.ident),
                        vis: vis(&t.vis),
                        pos: pos(f.sig.ident.span()),
                        body: Arc::new(summarize_block(b)),
                    }),
                    _ => None,
                })
                .collect();
            item(
                name(&t.ident),
                vis(&t.vis),
                pos(t.ident.span()),
                ItemKind::Trait { fns },
            )
        }
        syn::Item::TraitAlias(t) => item(
            name(&t.ident),
            vis(&t.vis),
            pos(t.ident.span()),
            ItemKind::TypeAlias,
        ),
        syn::Item::Type(t) => item(
            name(&t.ident),
            vis(&t.vis),
            pos(t.ident.span()),
            ItemKind::TypeAlias,
        ),
        syn::Item::Macro(m) => match &m.ident {
            Some(id) if m.mac.path.is_ident("macro_rules") => item(
                name(id),
                RawVis::Private,
                pos(id.span()),
                ItemKind::MacroRules {
                    exported: has_attr(&m.attrs, "macro_export"),
                },
            ),
            _ => item(unnamed, RawVis::Private, pos(m.span()), ItemKind::Other),
        },
        syn::Item::Impl(i) => {
            let self_ty = match &*i.self_ty {
                syn::Type::Path(tp) if tp.qself.is_none() => Some(path(&tp.path)),
                _ => None,
            };
            let fns = i
                .items
                .iter()
                .filter_map(|ii| match ii {
                    syn::ImplItem::Fn(f) => Some(AssocFn {
                        name: name(&f.sig.ident),
                        vis: vis(&f.vis),
                        pos: pos(f.sig.ident.span()),
                        body: Arc::new(summarize_block(&f.block)),
                    }),
                    _ => None,
                })
                .collect();
            item(
                unnamed,
                RawVis::Private,
                pos(i.impl_token.span),
                ItemKind::Impl {
                    self_ty,
                    is_trait_impl: i.trait_.is_some(),
                    fns,
                },
            )
        }
        other => item(unnamed, RawVis::Private, pos(other.span()), ItemKind::Other),
    }
}

fn flatten_use(
    tree: &syn::UseTree,
    prefix: &mut Vec<Name>,
    global: bool,
    out: &mut Vec<UseImport>,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(name(&p.ident));
            flatten_use(&p.tree, prefix, global, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => named_import(prefix, &n.ident, None, global, out),
        syn::UseTree::Rename(r) => named_import(prefix, &r.ident, Some(&r.rename), global, out),
        syn::UseTree::Glob(g) => out.push(UseImport {
            path: Path {
                global,
                segments: prefix.clone(),
            },
            kind: UseKind::Glob,
            pos: pos(g.star_token.span),
        }),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                flatten_use(t, prefix, global, out);
            }
        }
    }
}

fn named_import(
    prefix: &[Name],
    ident: &syn::Ident,
    rename: Option<&syn::Ident>,
    global: bool,
    out: &mut Vec<UseImport>,
) {
    let mut segments = prefix.to_vec();
    let last = name(ident);
    // `use a::{self}` imports `a` itself.
    let is_self = &*last == "self" && !segments.is_empty();
    if !is_self {
        segments.push(last);
    }
    let alias = match rename {
        Some(r) => name(r),
        None => segments.last().cloned().unwrap_or_else(|| Arc::from("")),
    };
    out.push(UseImport {
        path: Path { global, segments },
        kind: UseKind::Named { alias },
        pos: pos(ident.span()),
    });
}

fn const_item(ty: &syn::Type, expr: &syn::Expr) -> ConstItem {
    let ty = int_ty(ty);
    ConstItem {
        ty,
        expr: ty.map(|_| lower_cexpr(expr, 0)),
    }
}

fn int_ty(ty: &syn::Type) -> Option<IntTy> {
    match ty {
        syn::Type::Path(tp) if tp.qself.is_none() => tp
            .path
            .get_ident()
            .and_then(|id| IntTy::from_name(&id.to_string())),
        syn::Type::Paren(p) => int_ty(&p.elem),
        syn::Type::Group(g) => int_ty(&g.elem),
        _ => None,
    }
}

fn lower_cexpr(e: &syn::Expr, depth: u32) -> CExpr {
    let p = pos(e.span());
    if depth > MAX_EXPR_DEPTH {
        return CExpr::Unsupported("expression nested too deeply", p);
    }
    let sub = |e: &syn::Expr| Box::new(lower_cexpr(e, depth + 1));
    match e {
        syn::Expr::Lit(l) => match &l.lit {
            syn::Lit::Int(i) => {
                let suffix = i.suffix();
                let suffix_ty = IntTy::from_name(suffix);
                match i.base10_parse::<u128>() {
                    Ok(value) if suffix.is_empty() || suffix_ty.is_some() => CExpr::Int {
                        value,
                        suffix: suffix_ty,
                        pos: p,
                    },
                    Ok(_) => CExpr::Unsupported("literal with a non-integer suffix", p),
                    Err(_) => CExpr::TooLarge(p),
                }
            }
            syn::Lit::Bool(b) => CExpr::Bool(b.value, p),
            syn::Lit::Char(c) => CExpr::Char(c.value(), p),
            syn::Lit::Byte(b) => CExpr::Int {
                value: u128::from(b.value()),
                suffix: Some(IntTy::U8),
                pos: p,
            },
            syn::Lit::Float(_) => CExpr::Unsupported("float literal", p),
            syn::Lit::Str(_) | syn::Lit::ByteStr(_) | syn::Lit::CStr(_) => {
                CExpr::Unsupported("string literal", p)
            }
            _ => CExpr::Unsupported("literal", p),
        },
        syn::Expr::Paren(x) => lower_cexpr(&x.expr, depth + 1),
        syn::Expr::Group(x) => lower_cexpr(&x.expr, depth + 1),
        syn::Expr::Path(x) if x.qself.is_none() => CExpr::Path(path(&x.path), p),
        syn::Expr::Unary(u) => match u.op {
            syn::UnOp::Neg(_) => CExpr::Unary(UnOp::Neg, sub(&u.expr), p),
            syn::UnOp::Not(_) => CExpr::Unary(UnOp::Not, sub(&u.expr), p),
            _ => CExpr::Unsupported("dereference", p),
        },
        syn::Expr::Binary(b) => {
            let op = match b.op {
                syn::BinOp::Add(_) => BinOp::Add,
                syn::BinOp::Sub(_) => BinOp::Sub,
                syn::BinOp::Mul(_) => BinOp::Mul,
                syn::BinOp::Div(_) => BinOp::Div,
                syn::BinOp::Rem(_) => BinOp::Rem,
                syn::BinOp::Shl(_) => BinOp::Shl,
                syn::BinOp::Shr(_) => BinOp::Shr,
                syn::BinOp::BitAnd(_) => BinOp::BitAnd,
                syn::BinOp::BitOr(_) => BinOp::BitOr,
                syn::BinOp::BitXor(_) => BinOp::BitXor,
                _ => return CExpr::Unsupported("comparison or logical operator", p),
            };
            CExpr::Binary(op, sub(&b.left), sub(&b.right), p)
        }
        syn::Expr::Cast(c) => CExpr::Cast(sub(&c.expr), int_ty(&c.ty), p),
        syn::Expr::Call(_) => CExpr::Unsupported("function call", p),
        syn::Expr::MethodCall(_) => CExpr::Unsupported("method call", p),
        syn::Expr::Macro(_) => CExpr::Unsupported("macro invocation", p),
        syn::Expr::Block(_) => CExpr::Unsupported("block", p),
        syn::Expr::If(_) | syn::Expr::Match(_) => CExpr::Unsupported("conditional", p),
        _ => CExpr::Unsupported("expression", p),
    }
}

/// Panic macros, by the last segment of the macro path.
fn panic_macro(mac: &syn::Macro) -> Option<&'static str> {
    let last = mac.path.segments.last()?.ident.to_string();
    Some(match last.as_str() {
        "panic" => "panic!",
        "unreachable" => "unreachable!",
        "todo" => "todo!",
        "unimplemented" => "unimplemented!",
        "assert" => "assert!",
        "assert_eq" => "assert_eq!",
        "assert_ne" => "assert_ne!",
        _ => return None,
    })
}

fn summarize_block(block: &syn::Block) -> FnBody {
    let mut s = Summarizer::default();
    s.visit_block(block);
    s.body.calls.sort_by_key(|c| c.pos);
    s.body.panics.sort_by_key(|c| c.pos);
    s.body
}

#[derive(Default)]
struct Summarizer {
    body: FnBody,
}

impl<'ast> Visit<'ast> for Summarizer {
    fn visit_item(&mut self, _: &'ast syn::Item) {
        // Items nested in a body are not part of the enclosing function.
    }

    fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
        if let syn::Expr::Path(p) = &*c.func {
            if p.qself.is_none() {
                self.body.calls.push(Call {
                    path: path(&p.path),
                    pos: pos(c.span()),
                });
            }
        }
        syn::visit::visit_expr_call(self, c);
    }

    fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
        let method = m.method.to_string();
        let what = match method.as_str() {
            "unwrap" if m.args.is_empty() => Some(".unwrap()"),
            "expect" if m.args.len() == 1 => Some(".expect()"),
            _ => None,
        };
        if let Some(what) = what {
            self.body.panics.push(PanicSite {
                what,
                pos: pos(m.method.span()),
            });
        }
        syn::visit::visit_expr_method_call(self, m);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        if let Some(what) = panic_macro(mac) {
            self.body.panics.push(PanicSite {
                what,
                pos: pos(mac.path.span()),
            });
        }
    }
}
