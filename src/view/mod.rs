//! The pure view model: state (serialisable to the URL hash), slicing, normalisation, colour
//! scales, layout and hit-testing. No web types.
