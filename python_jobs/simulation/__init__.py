"""The learner simulator and the reference data (taxonomy, questions, materials) it draws on."""
