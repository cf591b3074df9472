"""The dashboard pages (run by Home.py through st.navigation) and the widgets they share."""
