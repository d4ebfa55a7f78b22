"""The request path: one request from validated input to answer (docs/architecture.md draws it).

InferencePipeline   gate -> decide -> local or cloud -> judge -> escalate or finish -> record
Runtime             what a request is answered with: the profile in effect and the parts built from it
"""
